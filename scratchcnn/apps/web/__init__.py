"""The web demo behind ``python -m scratchcnn.serve`` (needs the ``web`` extra: FastAPI, uvicorn).

``service`` loads models and answers requests as plain dicts (no HTTP); ``render`` turns
arrays into PNG data URLs; ``app`` is the FastAPI application; ``static/`` holds the page.
"""
