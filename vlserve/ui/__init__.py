"""The Gradio front end: a client of the HTTP gateway (it imports no torch and no engine)."""
