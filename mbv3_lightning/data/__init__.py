"""Image folder DataModules: scanning, validation, seeded splits and transforms."""
