package fastpath

import (
	"testing"
)

// BenchmarkRoute measures picking the app for a request target among
// several mounted apps (longest virtual path first, ASCII case-insensitive,
// on segment boundaries), for a target that matches the deepest app, one
// that falls through to the root app, and an absolute-form target.
func BenchmarkRoute(b *testing.B) {
	var apps []App
	for _, vp := range []string{"/", "/api", "/api/v2", "/static", "/admin", "/shop/cart"} {
		apps = append(apps, &fakeApp{vpath: vp})
	}
	r, err := newRouter(apps)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, target, want string }{
		{"target=deep", "/API/v2/items/42?expand=1", "/api/v2"},
		{"target=root", "/index.html?q=1", "/"},
		{"target=absolute", "http://shop.example/shop/cart/checkout", "/shop/cart"},
	} {
		target := []byte(tc.target)
		if rt := r.match(target); rt == nil || rt.app.VirtualPath() != tc.want {
			b.Fatalf("%s: matched %v, want %s", tc.target, rt, tc.want)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.match(target) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}
