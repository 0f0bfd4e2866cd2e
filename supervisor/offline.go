package supervisor

import (
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// This file owns app_offline.htm (spec §4.4): its detection by the
// directory watch, by the app goroutine and, while offline, by the request
// path, and the switch of the app offline and back online.

// offlinePollInterval is how often the request path re-checks
// app_offline.htm while the app is offline, as the reference polls, so a
// removal is noticed even without a working directory watch.
const offlinePollInterval = 200 * time.Millisecond

// isOfflineName matches app_offline.htm case-insensitively, as the
// reference does.
func isOfflineName(name string) bool { return strings.EqualFold(name, "app_offline.htm") }

// pollOffline checks app_offline.htm at most every offlinePollInterval on the request
// path, as the reference polls while offline, so a removal is noticed even
// without a working file watch. It reports true when the file looked gone
// (the owner has been asked to re-check and will publish a new view).
func (a *App) pollOffline() bool {
	now := time.Now().UnixNano()
	last := a.lastPoll.Load()
	if now-last < int64(offlinePollInterval) || !a.lastPoll.CompareAndSwap(last, now) {
		return false
	}
	_, err := a.s.os.Stat(a.offlinePath)
	select {
	case a.recheck <- struct{}{}:
	default:
	}
	return errors.Is(err, fs.ErrNotExist)
}

// checkOffline reads app_offline.htm and switches the app offline or back
// online. An unreadable file counts as present with an empty page, as in
// the reference.
func (a *App) checkOffline() {
	data, err := a.s.os.ReadFile(a.offlinePath)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		if a.offline {
			a.offline = false
			a.clearRapidFails()
			a.logEvent(zerolog.InfoLevel, "app_online", "app_offline.htm removed; the next request starts the app", nil)
			a.publish()
		}
		return
	}
	if err != nil {
		data = nil
	}
	a.page.Store(&data)
	if a.offline || a.stopping {
		return
	}
	a.offline = true
	a.logEvent(zerolog.InfoLevel, "app_offline", "app_offline.htm found; stopping the app", nil)
	a.stopAll(a.spec.Load().ShutdownTimeLimit, "app_offline")
	a.publish()
}
