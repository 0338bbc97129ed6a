"""Pictures as the domains share them: a radiograph decoded at its working size, the resizing and
letterboxing rules."""
