"""The HTML page: `GET /correlate/{id}` for browsers, the home page, and their templates and static files (docs/page.md)."""
