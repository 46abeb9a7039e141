"""Output stage: files a user or pipeline reads (masks, volumes, reports). All writes are atomic."""
