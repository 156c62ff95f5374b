"""The provider's two HTML pages: the login form and an error page; all text is escaped."""

from __future__ import annotations

from html import escape

_STYLE = "body{font-family:sans-serif;max-width:26rem;margin:3rem auto}label{display:block}"


def login_page(request_id: str, client_id: str, message: str = "") -> str:
    notice = f'<p role="alert">{escape(message)}</p>' if message else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sandbox sign-in</title>"
        f"<style>{_STYLE}</style></head><body><h1>Sandbox identity provider</h1>"
        f"<p>Sign in to continue to <b>{escape(client_id)}</b>.</p>{notice}"
        "<form method='post' action='/authorize/login'>"
        f"<input type='hidden' name='request_id' value='{escape(request_id, quote=True)}'>"
        "<label>User name <input name='username' autocomplete='username' required></label>"
        "<label>Password <input name='password' type='password' "
        "autocomplete='current-password' required></label>"
        "<button type='submit'>Sign in</button></form></body></html>"
    )


def error_page(message: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sign-in error</title>"
        f"<style>{_STYLE}</style></head><body><h1>Sign-in error</h1>"
        f"<p>{escape(message)}</p></body></html>"
    )
