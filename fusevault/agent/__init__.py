"""The unlock agent: who is unlocked in a mount, and until when."""
