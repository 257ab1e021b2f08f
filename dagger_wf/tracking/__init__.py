"""What is recorded about each state besides its payload."""
