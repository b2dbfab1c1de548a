module github.com/pimguard/pimguard

go 1.26.0

require (
	github.com/coreos/go-oidc/v3 v3.21.0
	github.com/go-chi/chi/v5 v5.5.0
	github.com/go-jose/go-jose/v4 v4.1.9
	github.com/hashicorp/golang-lru/v2 v2.0.7
	golang.org/x/sync v0.25.0
)

require golang.org/x/oauth2 v0.36.0 // indirect
