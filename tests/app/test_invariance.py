"""Through the real server: the greedy column of /generate is /greedy, whatever runs beside it."""

from __future__ import annotations

PROMPTS = ("In this paper, we propose a new method for", "We study")
N = 48


def test_generate_greedy_column_equals_greedy_alone(client):
    for prompt in PROMPTS:
        alone = client.predict(prompt, N, api_name="/greedy")
        assert alone
        # The sampled companions change with the seed and settings; the greedy column may not.
        for seed, (temperature, top_k, top_p) in enumerate([(1.0, 0, 1.0), (0.8, 40, 0.9),
                                                            (1.5, 0, 0.95), (0.7, 10, 1.0)]):
            columns = client.predict(prompt, N, temperature, top_k, top_p, seed, api_name="/generate")
            assert columns[0] == alone, (prompt, seed)
