"""`make report`: the scores and metrics.json (summary), the page's figures (page), one model's
scores as plain arrays (model_scores)."""
