"""Training configurations; each file has get_config(schedule='plrs')."""
