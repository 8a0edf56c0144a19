"""Architectures (plain ``nn.Module`` builders), their registry and the Lightning system."""
