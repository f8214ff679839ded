package registry

import (
	"fmt"
	"strings"
)

// NextLink returns the target of the rel="next" link in the value of a Link
// header (RFC 8288), "" when there is none: `</v2/_catalog?last=b&n=2>;
// rel="next"`, as _catalog and tags/list pages give it. Several links may
// be given, separated by commas (join several header values with ", "); a
// rel parameter may list several relation types. It refuses values it
// cannot parse.
func NextLink(header string) (string, error) {
	p := linkParser{s: header}
	for {
		p.skip(" \t,")
		if p.done() {
			return "", nil
		}
		target, rels, err := p.link()
		if err != nil {
			return "", fmt.Errorf("Link header %q: %v", clipLink(header), err)
		}
		for _, r := range strings.Fields(rels) {
			if strings.EqualFold(r, "next") {
				return target, nil
			}
		}
	}
}

// linkParser reads one link-value at a time: <target> followed by
// ;-separated parameters, each a token or a quoted string.
type linkParser struct {
	s string
	i int
}

func (p *linkParser) done() bool { return p.i >= len(p.s) }

func (p *linkParser) skip(set string) {
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
}

// link reads <target>; params and returns the target and the rel value.
func (p *linkParser) link() (target, rel string, err error) {
	if p.s[p.i] != '<' {
		return "", "", fmt.Errorf("expected '<' at offset %d", p.i)
	}
	end := strings.IndexByte(p.s[p.i:], '>')
	if end < 0 {
		return "", "", fmt.Errorf("no '>' after offset %d", p.i)
	}
	target = p.s[p.i+1 : p.i+end]
	p.i += end + 1
	for {
		p.skip(" \t")
		if p.done() || p.s[p.i] == ',' {
			return target, rel, nil
		}
		if p.s[p.i] != ';' {
			return "", "", fmt.Errorf("expected ';' or ',' at offset %d", p.i)
		}
		p.i++
		k, v, err := p.param()
		if err != nil {
			return "", "", err
		}
		if strings.EqualFold(k, "rel") && rel == "" {
			rel = v
		}
	}
}

// param reads name[=value], the value a token or a quoted string.
func (p *linkParser) param() (k, v string, err error) {
	p.skip(" \t")
	start := p.i
	for p.i < len(p.s) && isToken(p.s[p.i]) {
		p.i++
	}
	k = p.s[start:p.i]
	if k == "" {
		return "", "", fmt.Errorf("expected a parameter name at offset %d", p.i)
	}
	p.skip(" \t")
	if p.done() || p.s[p.i] != '=' {
		return k, "", nil
	}
	p.i++
	p.skip(" \t")
	if !p.done() && p.s[p.i] == '"' {
		v, err = p.quoted()
		return k, v, err
	}
	start = p.i
	for p.i < len(p.s) && isToken(p.s[p.i]) {
		p.i++
	}
	return k, p.s[start:p.i], nil
}

// quoted reads a quoted string, with backslash escapes.
func (p *linkParser) quoted() (string, error) {
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; c {
		case '"':
			p.i++
			return b.String(), nil
		case '\\':
			p.i++
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated quoted string")
}

// isToken reports a character of an RFC 7230 token.
func isToken(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?={}`, rune(c))
}

// clipLink shortens a header for an error message.
func clipLink(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
