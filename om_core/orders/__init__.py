"""Orders: status vocabulary and client ids."""
