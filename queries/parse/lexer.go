package parse

import (
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tKeyword
	tString
	tNumber
	tPunct
	tIllegal
)

type token struct {
	kind tokKind
	pos  Pos
	text string // keyword: upper case; ident: lower case; punct: the operator
}

var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "GROUP": true, "BY": true, "AS": true,
	"AND": true, "OR": true, "NOT": true, "BETWEEN": true, "IN": true, "DISTINCT": true,
	"WITH": true, "LIKE": true, "VALUESET": true,
}

// lexer splits the query into tokens. It is restartable at any position and
// never reads past the end.
type lexer struct {
	src string
	off int
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// next returns the next token. Unterminated strings and stray characters are
// tIllegal tokens whose text is the error message.
func (l *lexer) next() token {
	for l.off < len(l.src) {
		c := l.src[l.off]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			l.off++
			continue
		}
		if c == '-' && l.off+1 < len(l.src) && l.src[l.off+1] == '-' {
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.off++
			}
			continue
		}
		break
	}
	start := l.off
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: Pos(start)}
	}
	c := l.src[l.off]
	switch {
	case isLetter(c):
		for l.off < len(l.src) && (isLetter(l.src[l.off]) || isDigit(l.src[l.off])) {
			l.off++
		}
		word := l.src[start:l.off]
		if up := strings.ToUpper(word); keywords[up] {
			return token{kind: tKeyword, pos: Pos(start), text: up}
		}
		return token{kind: tIdent, pos: Pos(start), text: strings.ToLower(word)}
	case isDigit(c) || c == '.' && l.off+1 < len(l.src) && isDigit(l.src[l.off+1]):
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
		if l.off < len(l.src) && l.src[l.off] == '.' {
			l.off++
			for l.off < len(l.src) && isDigit(l.src[l.off]) {
				l.off++
			}
		}
		if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
			j := l.off + 1
			if j < len(l.src) && (l.src[j] == '+' || l.src[j] == '-') {
				j++
			}
			if j < len(l.src) && isDigit(l.src[j]) {
				l.off = j
				for l.off < len(l.src) && isDigit(l.src[l.off]) {
					l.off++
				}
			}
		}
		if l.off < len(l.src) && isLetter(l.src[l.off]) {
			for l.off < len(l.src) && (isLetter(l.src[l.off]) || isDigit(l.src[l.off])) {
				l.off++
			}
			return token{kind: tIllegal, pos: Pos(start), text: "malformed number `" + l.src[start:l.off] + "`"}
		}
		return token{kind: tNumber, pos: Pos(start), text: l.src[start:l.off]}
	case c == '\'':
		var b strings.Builder
		l.off++
		for {
			if l.off >= len(l.src) {
				return token{kind: tIllegal, pos: Pos(start), text: "unterminated string"}
			}
			ch := l.src[l.off]
			if ch == '\'' {
				if l.off+1 < len(l.src) && l.src[l.off+1] == '\'' {
					b.WriteByte('\'')
					l.off += 2
					continue
				}
				l.off++
				return token{kind: tString, pos: Pos(start), text: b.String()}
			}
			b.WriteByte(ch)
			l.off++
		}
	case c == '"':
		return l.illegalRune(start, "double quotes are not string quotes; use 'single quotes' for strings")
	}
	two := ""
	if l.off+1 < len(l.src) {
		two = l.src[l.off : l.off+2]
	}
	switch two {
	case "<=", ">=", "<>", "!=":
		l.off += 2
		if two == "!=" {
			two = "<>"
		}
		return token{kind: tPunct, pos: Pos(start), text: two}
	}
	switch c {
	case '(', ')', ',', ';', '*', '=', '<', '>', '+', '-', '/':
		l.off++
		return token{kind: tPunct, pos: Pos(start), text: string(c)}
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	return l.illegalRune(start, "unexpected character "+quoteRune(r))
}

func (l *lexer) illegalRune(start int, msg string) token {
	_, n := utf8.DecodeRuneInString(l.src[l.off:])
	l.off += n
	return token{kind: tIllegal, pos: Pos(start), text: msg}
}

func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "(invalid UTF-8)"
	}
	return "`" + string(r) + "`"
}
