"""Who may do what on Kafka: each role's least-privilege ACLs (relay.security.acls)."""
