package graphcheck

// GroupWatcher is implemented by Sources that read PIM-for-Groups state for
// a known set of groups rather than per principal: graphcheck/msgraph's
// Snapshot lists each watched group's assignment schedule instances once
// per sweep, since Graph lists them only by group or by principal.
// middleware's Guard calls WatchGroups from Require with the groups of its
// GroupMember and GroupOwner requirements, as routes are built, so that a
// snapshot answers for every group the Guard decides on; requirements built
// per request for Guard.Check must have their groups watched by whoever
// builds the Source (e.g. msgraph's SnapshotConfig.Groups).
//
// WatchGroups adds ids (object IDs, compared in lower case; repeated or
// already watched IDs change nothing). It must not block on Graph — the
// groups are read by the next sweep — and must be safe for concurrent
// use. An ID that is not a GUID is ignored: a Guard validates its
// requirements before it calls WatchGroups.
type GroupWatcher interface {
	WatchGroups(ids ...string)
}
