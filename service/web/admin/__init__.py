"""The admin side: pages for editors (session cookie) and a JSON API (bearer token)."""
