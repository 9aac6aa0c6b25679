"""The Gradio demo of `generation`: decoding strategies side by side, one column each.

columns.py holds the columns (one row each), ui.py the page and the API made from them,
handlers.py what each event does, view.py what the page shows of a result; the explorer:
panel.py (a token's candidates, for the page and /explain), fork.py (forks and their
breadcrumb), share.py (share links), explorer.py (those events), endpoints.py (/explain).
"""
