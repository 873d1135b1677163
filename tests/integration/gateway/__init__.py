"""The HTTP gateway on one live stack (a package, so its conftest does not shadow the top-level one)."""
