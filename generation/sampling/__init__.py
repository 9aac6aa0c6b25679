"""How a row picks its next token: the settings (params.py), the warpers (warpers.py, pure numpy
functions) and the table that ties them together and draws the tokens (pipeline.py)."""
