"""A small but real OpenID Connect provider for the sandbox and the tests.

Authorization code flow with PKCE (S256), ``state`` and ``nonce``; RS256 ID tokens signed with a
key generated at first start and kept 0600 in the provider's folder; users and clients from
files holding only hashes. It serves 127.0.0.1 only and is not meant for production use.
"""
