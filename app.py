"""Placeholder: the Gradio demo lands with the app issue."""

if __name__ == "__main__":
    raise SystemExit("app.py is a placeholder until the app issue lands.")
