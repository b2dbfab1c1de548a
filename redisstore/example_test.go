package redisstore_test

import (
	"encoding/base64"
	"log"
	"os"

	"github.com/pimguard/pimguard/graphcheck"
	"github.com/pimguard/pimguard/middleware"
	"github.com/pimguard/pimguard/redisstore"
)

// Fleet mode: every replica builds its Guard on the same Redis with the same
// key. (Not run by go test: it needs a Redis server and a Source.)
func ExampleNew() {
	key, err := base64.StdEncoding.DecodeString(os.Getenv("PIMGUARD_SHARED_KEY")) // ≥ 32 random bytes
	if err != nil {
		log.Fatal(err)
	}
	fleet, err := redisstore.New(redisstore.Config{
		URL: os.Getenv("PIMGUARD_REDIS_URL"), // e.g. rediss://pimguard:secret@redis.internal:6380/0
		Key: key,
	})
	if err != nil {
		log.Fatal(err) // a configuration error: Redis being down is not one
	}
	defer fleet.Close()

	var source graphcheck.Source // graphcheck/msgraph, with msgraph.Config{TenantLimits: fleet}
	guard, err := middleware.NewGuard(middleware.GuardConfig{Source: source, Shared: fleet})
	if err != nil {
		log.Fatal(err)
	}
	_ = guard // mount guard.Require(…) as without fleet mode; guard.Purge now reaches every replica
}
