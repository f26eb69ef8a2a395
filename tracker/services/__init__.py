"""Services own every query. Routes (JSON API, pages, CLI) parse input, call one service
function with keyword-only arguments, and render what it returns (``*Public`` models, never
table objects)."""
