"""Base providers: each makes the starting root file system tree of the image."""
