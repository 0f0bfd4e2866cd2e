package configload

import "testing"

// BenchmarkParse measures a reload's cost per app: the docs' web.config and
// one with every attribute, variables and handler settings.
func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"framework-dependent/web.config", "all-attributes.config"} {
		data := readTestdata(b, name)
		opts := Options{Environ: []string{"WHO=w", "HOME=/home", "PATH=/usr/bin:/bin"}}
		b.Run("file="+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse(testFile, data, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
