"""Where the agent keeps what it knows: the state dir (LKG, history, journal), the status document, Consul."""
