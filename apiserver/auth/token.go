package auth

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// TokenAuthenticator authenticates "Authorization: Bearer <token>" against
// a fixed set of tokens, as kube-apiserver's --token-auth-file does.
type TokenAuthenticator struct {
	tokens map[string]User // read-only after construction
}

var _ Authenticator = (*TokenAuthenticator)(nil)

// NewTokenFile reads a Kubernetes static token file (see ParseTokens).
func NewTokenFile(path string) (*TokenAuthenticator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: token file: %w", err)
	}
	defer f.Close()
	tokens, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("auth: token file %s: %w", path, err)
	}
	return NewTokens(tokens), nil
}

// NewTokens returns an authenticator for the given token -> user map. The
// map and users are copied.
func NewTokens(tokens map[string]*User) *TokenAuthenticator {
	a := &TokenAuthenticator{tokens: make(map[string]User, len(tokens))}
	for tok, u := range tokens {
		a.tokens[tok] = User{Name: u.Name, UID: u.UID, Groups: append([]string(nil), u.Groups...)}
	}
	return a
}

// ParseTokens parses Kubernetes' static token file format: CSV records of
// at least three columns,
//
//	token,user,uid,"group1,group2"
//
// where the optional fourth column is a comma-separated group list (quote
// it, as above, when it has more than one group). Blank lines and lines
// starting with '#' are skipped. Unlike kube-apiserver, which only logs a
// warning, an empty token, an empty user name or a token repeated on two
// lines is an error naming the line: a silently ignored line in a
// credentials file is a lockout waiting to happen.
func ParseTokens(r io.Reader) (map[string]*User, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	tokens := map[string]*User{}
	seenOn := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return tokens, nil
		}
		if err != nil {
			return nil, err // *csv.ParseError carries the line
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return nil, fmt.Errorf("line %d: want at least 3 columns (token, user name, user uid), found %d", line, len(rec))
		}
		tok, name := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		switch {
		case tok == "":
			return nil, fmt.Errorf("line %d: empty token", line)
		case name == "":
			return nil, fmt.Errorf("line %d: empty user name", line)
		case seenOn[tok] != 0:
			return nil, fmt.Errorf("line %d: duplicate token (first on line %d)", line, seenOn[tok])
		}
		seenOn[tok] = line
		u := &User{Name: name, UID: strings.TrimSpace(rec[2])}
		if len(rec) >= 4 {
			for _, g := range strings.Split(rec[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.Groups = append(u.Groups, g)
				}
			}
		}
		tokens[tok] = u
	}
}

// Authenticate implements Authenticator. No bearer token is (nil, false,
// nil); an unknown one is ErrInvalidToken.
func (a *TokenAuthenticator) Authenticate(r *http.Request) (*User, bool, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return nil, false, nil
	}
	u, ok := a.tokens[tok]
	if !ok {
		return nil, false, ErrInvalidToken
	}
	return &User{Name: u.Name, UID: u.UID, Groups: withAuthenticated(u.Groups)}, true, nil
}
