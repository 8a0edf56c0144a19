"""Plain torch ``nn.Module`` builders; no Lightning imports here."""
