-- Federated credentials: a service principal trusts the tokens an issuer
-- (a Kubernetes cluster's service-account issuer, any OIDC issuer) signs for
-- one subject and audience, so a pod or node pulls without a stored secret.
CREATE TABLE federated_credentials (
    identity_id  TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    audience     TEXT NOT NULL,
    jwks         TEXT,               -- a static JWKS, for issuers the registry cannot reach
    ca_pem       TEXT,               -- CA certificates (PEM) for the issuer's HTTPS
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (identity_id, name)
) WITHOUT ROWID;
CREATE INDEX federated_credentials_issuer ON federated_credentials(issuer, subject);
