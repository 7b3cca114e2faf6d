"""Mail: composing messages (messages, ics), sending them (transport), a local sink (sink)."""
