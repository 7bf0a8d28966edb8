"""`supportbot eval`: run a test set through the full pipeline and report what a customer would see."""
