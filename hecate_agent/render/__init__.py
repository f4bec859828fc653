"""Pure renderers: a validated DesiredState in, proxy configuration out. No I/O, no clock."""
