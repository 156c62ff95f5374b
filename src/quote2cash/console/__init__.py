"""The operations console: server-rendered pages under ``/console`` for the people who run the
hub, every page behind a signed-in session and every action checked on the server."""
