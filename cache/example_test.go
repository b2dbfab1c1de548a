package cache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pimguard/pimguard/cache"
)

// The loader below stands in for a Microsoft Graph lookup of a principal's
// active role assignments. It bounds each result by the earliest end of the
// assignments it returns, so the cache never serves an assignment past its
// end, and reports "nothing active" as a negative result, kept for a shorter
// time.
func Example() {
	now := time.Date(2025, 6, 2, 10, 31, 45, 0, time.UTC)
	clock := func() time.Time { return now }

	type assignment struct {
		Role string
		End  time.Time
	}
	active := map[string][]assignment{
		"oid-alice": {{Role: "User Administrator", End: time.Date(2025, 6, 2, 10, 32, 0, 0, time.UTC)}},
	}
	load := func(ctx context.Context, oid string) (cache.Result[[]assignment], error) {
		as := active[oid]
		if len(as) == 0 {
			return cache.Result[[]assignment]{Negative: true}, nil
		}
		res := cache.Result[[]assignment]{Value: as}
		for _, a := range as {
			if res.NotAfter.IsZero() || a.End.Before(res.NotAfter) {
				res.NotAfter = a.End
			}
		}
		return res, nil
	}

	c, err := cache.New(cache.Config{Now: clock}, load)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, oid := range []string{"oid-alice", "oid-alice", "oid-bob"} {
		as, info, err := c.Get(ctx, oid)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: %d active, %s, fresh until %s\n", oid, len(as), info.Source, info.Expires.Format(time.TimeOnly))
	}

	now = now.Add(15 * time.Second) // 10:32:00: alice's assignment has ended
	_, info, _ := c.Get(ctx, "oid-alice")
	fmt.Println("oid-alice at 10:32:00:", info.Source)
	// Output:
	// oid-alice: 1 active, loaded, fresh until 10:32:00
	// oid-alice: 1 active, hit, fresh until 10:32:00
	// oid-bob: 0 active, loaded, fresh until 10:31:50
	// oid-alice at 10:32:00: loaded
}
