"""The Gradio demo of `generation`: decoding strategies side by side, one column each.

columns.py holds the columns (one row each), ui.py the page and the API made from them,
handlers.py what each event does, view.py what the page shows of a result.
"""
