"""`tether serve`: the HTTP service (FastAPI) over the library: answers, search, documents,
an OpenAI-compatible gateway, metrics and a web page."""
