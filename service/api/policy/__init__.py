"""Who may score and how many at once: API keys and scoring slots."""
