package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/loopgate/loopgate/configload"
)

// This file owns the identity an app's processes run as: handler settings
// userName and groupName (IIS processModel@userName), looked up in the
// system's user and group databases when a process starts (configload does
// no lookups) and, ahead of that, by ResolveIdentity for loopgate check,
// serve's start and a reload.

// ErrIdentity is matched (errors.Is) by every *IdentityError.
var ErrIdentity = errors.New("cannot run the app as its userName/groupName")

// IdentityError says why an app's userName or groupName cannot be used:
// an unknown user or group, or loopgate not running as root.
type IdentityError struct {
	Setting string // "userName" or "groupName"
	Value   string // as written
	Rule    string // what is wrong, lowercase
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Setting, e.Value, e.Rule)
}

// Is reports whether target is ErrIdentity.
func (e *IdentityError) Is(target error) bool { return target == ErrIdentity }

// Identity is the user and group an app's processes run as, resolved.
type Identity struct {
	// UID and GID are what the processes get, with no supplementary
	// groups.
	UID, GID uint32
	// User is the passwd entry of UserName ("" for a numeric uid without
	// one, or without UserName); Home its home directory.
	User, Home string
}

// ResolveIdentity looks up spec's userName and groupName: a name or a
// numeric id each; without groupName, the user's primary group; with only
// groupName, loopgate's own user. It returns nil when neither is set. The
// error is an *IdentityError and says what is wrong: no such user or group,
// a numeric uid without a passwd entry and no groupName, or loopgate not
// running as root (switching to the ids loopgate already runs as is
// allowed).
func ResolveIdentity(spec *configload.AppSpec) (*Identity, error) {
	if spec.UserName == "" && spec.GroupName == "" {
		return nil, nil
	}
	id := &Identity{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	if spec.UserName != "" {
		u, err := lookupUser(spec.UserName)
		switch {
		case err == nil:
			uid, _ := strconv.ParseUint(u.Uid, 10, 32)
			gid, _ := strconv.ParseUint(u.Gid, 10, 32)
			id.UID, id.GID, id.User, id.Home = uint32(uid), uint32(gid), u.Username, u.HomeDir
		case isNumeric(spec.UserName) && spec.GroupName != "":
			uid, _ := strconv.ParseUint(spec.UserName, 10, 32)
			id.UID = uint32(uid)
		case isNumeric(spec.UserName):
			return nil, &IdentityError{"userName", spec.UserName, "uid " + spec.UserName + " has no passwd entry to take the group from: give groupName too"}
		default:
			return nil, &IdentityError{"userName", spec.UserName, "no such user"}
		}
	}
	if spec.GroupName != "" {
		gid, err := lookupGroup(spec.GroupName)
		if err != nil {
			return nil, &IdentityError{"groupName", spec.GroupName, err.Error()}
		}
		id.GID = gid
	}
	if euid := os.Geteuid(); euid != 0 && (id.UID != uint32(euid) || id.GID != uint32(os.Getegid())) {
		setting, value := "userName", spec.UserName
		if value == "" {
			setting, value = "groupName", spec.GroupName
		}
		return nil, &IdentityError{setting, value, fmt.Sprintf("loopgate runs as uid %d, not as root, so it cannot start the app's processes as uid %d gid %d "+
			"(run loopgate as root, or remove userName and groupName)", euid, id.UID, id.GID)}
	}
	return id, nil
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// lookupUser finds a user by name, or by uid when the name is numeric and
// no user has it as a name.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil && isNumeric(name) {
		u, err = user.LookupId(name)
	}
	return u, err
}

// lookupGroup finds a group's id by name; a numeric name that no group
// has is taken as the gid itself.
func lookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err == nil {
		gid, perr := strconv.ParseUint(g.Gid, 10, 32)
		return uint32(gid), perr
	}
	if gid, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		return uint32(gid), nil
	}
	return 0, errors.New("no such group")
}

// credential is what the spawner sets: the ids and an empty list of
// supplementary groups (root's would otherwise pass on). nil without an
// identity, or when it is loopgate's own.
func (id *Identity) credential() *syscall.Credential {
	if id == nil || (id.UID == uint32(os.Geteuid()) && id.GID == uint32(os.Getegid()) && os.Geteuid() != 0) {
		return nil
	}
	return &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: []uint32{}}
}

// environ sets HOME, USER and LOGNAME in environ to the identity's user,
// as systemd's User= does, so that the app does not look for its files in
// root's home; web.config's <environmentVariables> still win (they are
// applied after). Unchanged without a user.
func (id *Identity) environ(environ []string) []string {
	if id == nil || id.User == "" {
		return environ
	}
	set := map[string]string{"USER": id.User, "LOGNAME": id.User}
	if id.Home != "" {
		set["HOME"] = id.Home
	}
	out := make([]string, 0, len(environ)+len(set))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; !ok {
			out = append(out, kv)
		}
	}
	for _, name := range []string{"HOME", "USER", "LOGNAME"} {
		if v, ok := set[name]; ok {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// String names the identity for logs: "nobody (65534:65534)".
func (id *Identity) String() string {
	if id == nil {
		return ""
	}
	n := id.User
	if n == "" {
		n = "uid " + strconv.FormatUint(uint64(id.UID), 10)
	}
	return fmt.Sprintf("%s (%d:%d)", n, id.UID, id.GID)
}
