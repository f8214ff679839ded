package registry

import (
	"strings"
	"testing"
)

func TestNextLink(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   string
	}{
		{[]string{`</v2/org/app/tags/list?n=1000&last=b>; rel="next"`}, "/v2/org/app/tags/list?n=1000&last=b"},
		{[]string{`<https://r.example/a>; rel="prev", </v2/x/tags/list?last=c> ; rel="next"`}, "/v2/x/tags/list?last=c"},
		{[]string{`</v2/x>; rel="prev"`}, ""},
		{nil, ""},
	} {
		if got, err := NextLink(strings.Join(c.values, ", ")); got != c.want || err != nil {
			t.Errorf("NextLink(%q) = %q, %v; want %q", c.values, got, err, c.want)
		}
	}
}

func FuzzNextLink(f *testing.F) {
	f.Add(`</v2/org/app/tags/list?n=1000&last=b>; rel="next"`)
	f.Add(`<a>;;, ,<b>; rel="next"`)
	f.Fuzz(func(t *testing.T, v string) { _, _ = NextLink(v) })
}
