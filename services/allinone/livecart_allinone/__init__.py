"""All-in-one dev mode: every Livecart service in one process on embedded defaults."""
