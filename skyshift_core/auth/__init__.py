"""Authentication, authorization and multi-tenancy: tokens, passwords, Roles, invites, the audit log
and bootstrapping. `docs/security.md` describes the model; the API server wires it in."""
