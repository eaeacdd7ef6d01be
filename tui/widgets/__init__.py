"""Small widgets, one idea each: the request flow, an instance panel, the clients' view, the event log."""
