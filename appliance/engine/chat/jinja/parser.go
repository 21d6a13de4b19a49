package jinja

import (
	"strconv"
	"strings"
)

// node is an AST node; pos is the byte offset used for error positions.
type node interface{ position() int }

type base struct{ pos int }

func (b base) position() int { return b.pos }

type (
	textNode struct {
		base
		text string
	}
	commentNode struct{ base }
	outputNode  struct {
		base
		expr node
	}
	ifNode struct {
		base
		test        node
		body, else_ []node
	}
	forNode struct {
		base
		target   node // identNode or tupleNode of identNodes
		iter     node
		filter   node // optional "for x in xs if cond"
		body     []node
		elseBody []node
	}
	setNode struct {
		base
		target node
		value  node   // nil for a block set
		body   []node // block set
	}
	macroNode struct {
		base
		name   string
		params []param
		body   []node
	}
	filterBlockNode struct {
		base
		filter *filterNode // operand is nil; the body is the input
		body   []node
	}
	breakNode    struct{ base }
	continueNode struct{ base }
	noopNode     struct{ base }

	identNode struct {
		base
		name string
	}
	constNode struct {
		base
		val Value
	}
	listNode struct {
		base
		items []node
	}
	tupleNode struct {
		base
		items []node
	}
	dictNode struct {
		base
		keys, vals []node
	}
	memberNode struct {
		base
		obj  node
		prop node // identNode for obj.name, any expression for obj[expr]
		dot  bool
	}
	sliceNode struct {
		base
		start, stop, step node
	}
	callNode struct {
		base
		callee node
		args   []arg
	}
	filterNode struct {
		base
		operand node
		name    string
		args    []arg
	}
	testNode struct {
		base
		operand node
		name    string
		args    []arg
		negate  bool
	}
	binaryNode struct {
		base
		op          string
		left, right node
	}
	unaryNode struct {
		base
		op      string
		operand node
	}
	ternaryNode struct {
		base
		cond, yes, no node
	}
	// selectNode is "a if cond" without else: undefined when cond is false.
	selectNode struct {
		base
		val, cond node
	}
)

type arg struct {
	name string // keyword name; empty for positional
	val  node
}

type param struct {
	name string
	def  node // nil when the parameter has no default
}

type parser struct {
	src  string
	toks []token
	i    int
	// loops counts the enclosing for-loop bodies, so that break/continue
	// outside a loop is reported where it is written.
	loops int
}

func parse(src string) ([]node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	var body []node
	for p.i < len(p.toks) {
		n, err := p.parseAny()
		if err != nil {
			return nil, err
		}
		body = append(body, n)
	}
	return body, nil
}

func (p *parser) peek(off int) token {
	if p.i+off >= len(p.toks) {
		end := len(p.src)
		return token{kind: tEOF, pos: end}
	}
	return p.toks[p.i+off]
}

func (p *parser) next() token { t := p.peek(0); p.i++; return t }

func (p *parser) errAt(t token, format string, args ...any) *Error {
	return syntaxErr(p.src, t.pos, format, args...)
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of template"
	case tText:
		return "text"
	case tIdent:
		return "'" + t.val + "'"
	case tString:
		return "string " + strconv.Quote(t.val)
	}
	if t.val != "" {
		return "'" + t.val + "'"
	}
	return tokNames[t.kind]
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.peek(0)
	if t.kind != k {
		return t, p.errAt(t, "expected %s, got %s", what, describe(t))
	}
	p.i++
	return t, nil
}

func (p *parser) isIdent(name string) bool {
	t := p.peek(0)
	return t.kind == tIdent && t.val == name
}

func (p *parser) expectIdent(name string) error {
	if !p.isIdent(name) {
		t := p.peek(0)
		return p.errAt(t, "expected '%s', got %s", name, describe(t))
	}
	p.i++
	return nil
}

// atStatement reports whether the next tokens are "{%" followed by one of names.
func (p *parser) atStatement(names ...string) bool {
	if p.peek(0).kind != tOpenStmt || p.peek(1).kind != tIdent {
		return false
	}
	for _, n := range names {
		if p.peek(1).val == n {
			return true
		}
	}
	return false
}

// parseBody parses nodes until one of the end statements; opener names the
// block for the error when the template ends first.
func (p *parser) parseBody(opener token, ends ...string) ([]node, error) {
	var body []node
	for !p.atStatement(ends...) {
		if p.peek(0).kind == tEOF {
			l, c := lineCol(p.src, opener.pos)
			return nil, p.errAt(p.peek(0), "unexpected end of template: missing {%% %s %%} for the block opened at line %d, column %d", ends[len(ends)-1], l, c)
		}
		n, err := p.parseAny()
		if err != nil {
			return nil, err
		}
		body = append(body, n)
	}
	return body, nil
}

func (p *parser) endTag(name string) error {
	if _, err := p.expect(tOpenStmt, "'{%'"); err != nil {
		return err
	}
	if err := p.expectIdent(name); err != nil {
		return err
	}
	_, err := p.expect(tCloseStmt, "'%}'")
	return err
}

func (p *parser) parseAny() (node, error) {
	t := p.peek(0)
	switch t.kind {
	case tComment:
		p.i++
		return &commentNode{base{t.pos}}, nil
	case tText:
		p.i++
		return &textNode{base{t.pos}, t.val}, nil
	case tOpenStmt:
		return p.parseStatement()
	case tOpenExpr:
		p.i++
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tCloseExpr, "'}}'"); err != nil {
			return nil, err
		}
		return &outputNode{base{t.pos}, e}, nil
	}
	return nil, p.errAt(t, "unexpected %s", describe(t))
}

func (p *parser) parseStatement() (node, error) {
	open := p.next() // {%
	t := p.peek(0)
	if t.kind != tIdent {
		return nil, p.errAt(t, "expected a statement name after '{%%', got %s", describe(t))
	}
	p.i++
	b := base{open.pos}
	switch t.val {
	case "set":
		return p.parseSet(open)
	case "if":
		n, err := p.parseIf(open)
		if err != nil {
			return nil, err
		}
		return n, p.endTag("endif")
	case "for":
		n, err := p.parseFor(open)
		if err != nil {
			return nil, err
		}
		return n, p.endTag("endfor")
	case "macro":
		n, err := p.parseMacro(open)
		if err != nil {
			return nil, err
		}
		return n, p.endTag("endmacro")
	case "filter":
		f, err := p.parseFilterTail(nil, t)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
			return nil, err
		}
		body, err := p.parseBody(open, "endfilter")
		if err != nil {
			return nil, err
		}
		return &filterBlockNode{b, f, body}, p.endTag("endfilter")
	case "break", "continue":
		if p.loops == 0 {
			return nil, p.errAt(t, "'%s' outside a for loop", t.val)
		}
		if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
			return nil, err
		}
		if t.val == "break" {
			return &breakNode{b}, nil
		}
		return &continueNode{b}, nil
	case "generation", "endgeneration":
		// transformers-specific markers for assistant masks; render nothing.
		if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
			return nil, err
		}
		return &noopNode{b}, nil
	}
	return nil, p.errAt(t, "unknown statement '%s'", t.val)
}

func (p *parser) parseSet(open token) (node, error) {
	target, err := p.parseExprSeq(false)
	if err != nil {
		return nil, err
	}
	if err := checkAssignable(p, target); err != nil {
		return nil, err
	}
	n := &setNode{base: base{open.pos}, target: target}
	if p.peek(0).kind == tEquals {
		p.i++
		if n.value, err = p.parseExprSeq(false); err != nil {
			return nil, err
		}
		_, err = p.expect(tCloseStmt, "'%}'")
		return n, err
	}
	if _, err := p.expect(tCloseStmt, "'=' or '%}'"); err != nil {
		return nil, err
	}
	if n.body, err = p.parseBody(open, "endset"); err != nil {
		return nil, err
	}
	return n, p.endTag("endset")
}

func checkAssignable(p *parser, target node) error {
	switch t := target.(type) {
	case *identNode:
		return nil
	case *memberNode:
		if t.dot {
			return nil
		}
	case *tupleNode:
		for _, it := range t.items {
			if _, ok := it.(*identNode); !ok {
				return syntaxErr(p.src, it.position(), "can only unpack into plain names")
			}
		}
		return nil
	}
	return syntaxErr(p.src, target.position(), "cannot assign to this expression")
}

func (p *parser) parseIf(open token) (node, error) {
	test, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
		return nil, err
	}
	n := &ifNode{base: base{open.pos}, test: test}
	if n.body, err = p.parseBody(open, "elif", "else", "endif"); err != nil {
		return nil, err
	}
	switch {
	case p.atStatement("elif"):
		elif := p.next()
		p.i++ // "elif"
		nested, err := p.parseIf(elif)
		if err != nil {
			return nil, err
		}
		n.else_ = []node{nested}
	case p.atStatement("else"):
		p.i += 2
		if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
			return nil, err
		}
		if n.else_, err = p.parseBody(open, "endif"); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (p *parser) parseFor(open token) (node, error) {
	target, err := p.parseExprSeq(true)
	if err != nil {
		return nil, err
	}
	switch t := target.(type) {
	case *identNode:
	case *tupleNode:
		for _, it := range t.items {
			if _, ok := it.(*identNode); !ok {
				return nil, syntaxErr(p.src, it.position(), "loop variables must be plain names")
			}
		}
	default:
		return nil, syntaxErr(p.src, target.position(), "loop variables must be plain names")
	}
	if err := p.expectIdent("in"); err != nil {
		return nil, err
	}
	iter, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	n := &forNode{base: base{open.pos}, target: target, iter: iter}
	// "for x in xs if cond" parses as a select expression; split it back.
	if s, ok := iter.(*selectNode); ok {
		n.iter, n.filter = s.val, s.cond
	}
	if p.isIdent("recursive") {
		return nil, p.errAt(p.peek(0), "recursive loops are not supported")
	}
	if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
		return nil, err
	}
	p.loops++
	n.body, err = p.parseBody(open, "else", "endfor")
	p.loops--
	if err != nil {
		return nil, err
	}
	if p.atStatement("else") {
		p.i += 2
		if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
			return nil, err
		}
		if n.elseBody, err = p.parseBody(open, "endfor"); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (p *parser) parseMacro(open token) (node, error) {
	name, err := p.expect(tIdent, "macro name")
	if err != nil {
		return nil, err
	}
	args, err := p.parseArgs()
	if err != nil {
		return nil, err
	}
	n := &macroNode{base: base{open.pos}, name: name.val}
	for _, a := range args {
		if a.name != "" {
			n.params = append(n.params, param{a.name, a.val})
			continue
		}
		id, ok := a.val.(*identNode)
		if !ok {
			return nil, syntaxErr(p.src, a.val.position(), "macro parameters must be names")
		}
		n.params = append(n.params, param{name: id.name})
	}
	if _, err := p.expect(tCloseStmt, "'%}'"); err != nil {
		return nil, err
	}
	// A macro body is not inside the loop its definition sits in.
	saved := p.loops
	p.loops = 0
	n.body, err = p.parseBody(open, "endmacro")
	p.loops = saved
	if err != nil {
		return nil, err
	}
	return n, nil
}

// parseExprSeq parses "a, b, c" into a tuple (or a single expression).
func (p *parser) parseExprSeq(primary bool) (node, error) {
	start := p.peek(0)
	one := func() (node, error) {
		if primary {
			return p.parsePrimary()
		}
		return p.parseExpr()
	}
	first, err := one()
	if err != nil {
		return nil, err
	}
	if p.peek(0).kind != tComma {
		return first, nil
	}
	items := []node{first}
	for p.peek(0).kind == tComma {
		p.i++
		it, err := one()
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return &tupleNode{base{start.pos}, items}, nil
}

// Precedence, lowest first, as in the reference engine: conditional
// expression, or, and, not, comparison/membership, + - ~, * / %, unary
// minus, "is" tests, filters, member access and calls.
func (p *parser) parseExpr() (node, error) {
	a, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if !p.isIdent("if") {
		return a, nil
	}
	ifTok := p.next()
	cond, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.isIdent("else") {
		p.i++
		no, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		return &ternaryNode{base{ifTok.pos}, cond, a, no}, nil
	}
	return &selectNode{base{ifTok.pos}, a, cond}, nil
}

func (p *parser) parseOr() (node, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.isIdent("or") {
		op := p.next()
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		left = &binaryNode{base{op.pos}, "or", left, right}
	}
	return left, nil
}

func (p *parser) parseAnd() (node, error) {
	left, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.isIdent("and") {
		op := p.next()
		right, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		left = &binaryNode{base{op.pos}, "and", left, right}
	}
	return left, nil
}

func (p *parser) parseNot() (node, error) {
	if p.isIdent("not") {
		op := p.next()
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &unaryNode{base{op.pos}, "not", x}, nil
	}
	return p.parseComparison()
}

func (p *parser) parseComparison() (node, error) {
	left, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek(0)
		var op string
		switch {
		case t.kind == tIdent && t.val == "not" && p.peek(1).kind == tIdent && p.peek(1).val == "in":
			p.i += 2
			op = "not in"
		case t.kind == tIdent && t.val == "in":
			p.i++
			op = "in"
		case t.kind == tComparison:
			p.i++
			op = t.val
		default:
			return left, nil
		}
		right, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		left = &binaryNode{base{t.pos}, op, left, right}
	}
}

func (p *parser) parseAdditive() (node, error) {
	left, err := p.parseMultiplicative()
	if err != nil {
		return nil, err
	}
	for p.peek(0).kind == tAdditive {
		op := p.next()
		right, err := p.parseMultiplicative()
		if err != nil {
			return nil, err
		}
		left = &binaryNode{base{op.pos}, op.val, left, right}
	}
	return left, nil
}

func (p *parser) parseMultiplicative() (node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.peek(0).kind == tMultiplicative {
		op := p.next()
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		left = &binaryNode{base{op.pos}, op.val, left, right}
	}
	return left, nil
}

func (p *parser) parseUnary() (node, error) {
	if t := p.peek(0); t.kind == tUnary {
		p.i++
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &unaryNode{base{t.pos}, t.val, x}, nil
	}
	return p.parseTest()
}

func (p *parser) parseTest() (node, error) {
	operand, err := p.parseFilter()
	if err != nil {
		return nil, err
	}
	for p.isIdent("is") {
		isTok := p.next()
		n := &testNode{base: base{isTok.pos}, operand: operand}
		if p.isIdent("not") {
			p.i++
			n.negate = true
		}
		name := p.peek(0)
		// "none", "true" and "false" are names here, not constants.
		if name.kind != tIdent {
			return nil, p.errAt(name, "expected a test name after 'is', got %s", describe(name))
		}
		p.i++
		n.name = name.val
		if p.peek(0).kind == tLParen {
			if n.args, err = p.parseArgs(); err != nil {
				return nil, err
			}
		}
		operand = n
	}
	return operand, nil
}

func (p *parser) parseFilter() (node, error) {
	operand, err := p.parsePostfix()
	if err != nil {
		return nil, err
	}
	for p.peek(0).kind == tPipe {
		pipe := p.next()
		f, err := p.parseFilterTail(operand, pipe)
		if err != nil {
			return nil, err
		}
		operand = f
	}
	return operand, nil
}

// parseFilterTail parses "name" or "name(args)" after a pipe or {% filter.
func (p *parser) parseFilterTail(operand node, at token) (*filterNode, error) {
	name, err := p.expect(tIdent, "a filter name")
	if err != nil {
		return nil, err
	}
	f := &filterNode{base: base{at.pos}, operand: operand, name: name.val}
	if p.peek(0).kind == tLParen {
		if f.args, err = p.parseArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (p *parser) parsePostfix() (node, error) {
	x, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek(0)
		switch t.kind {
		case tDot:
			p.i++
			name := p.peek(0)
			if name.kind == tNumber && !strings.ContainsAny(name.val, ".-+") {
				// Jinja's "items.0" is items[0].
				p.i++
				n, err := strconv.ParseInt(name.val, 10, 64)
				if err != nil {
					return nil, p.errAt(name, "bad index %q", name.val)
				}
				x = &memberNode{base{t.pos}, x, &constNode{base{name.pos}, n}, false}
				continue
			}
			if name.kind != tIdent {
				return nil, p.errAt(name, "expected an attribute name after '.', got %s", describe(name))
			}
			p.i++
			x = &memberNode{base{t.pos}, x, &identNode{base{name.pos}, name.val}, true}
		case tLBracket:
			p.i++
			prop, err := p.parseSubscript()
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tRBracket, "']'"); err != nil {
				return nil, err
			}
			x = &memberNode{base{t.pos}, x, prop, false}
		case tLParen:
			args, err := p.parseArgs()
			if err != nil {
				return nil, err
			}
			x = &callNode{base{x.position()}, x, args}
		default:
			return x, nil
		}
	}
}

// parseSubscript parses what is between [ and ]: an expression or a slice.
func (p *parser) parseSubscript() (node, error) {
	start := p.peek(0)
	var parts [3]node
	idx := 0
	isSlice := false
	for p.peek(0).kind != tRBracket {
		if p.peek(0).kind == tColon {
			p.i++
			isSlice = true
			idx++
			if idx > 2 {
				return nil, p.errAt(p.peek(0), "too many ':' in slice")
			}
			continue
		}
		if parts[idx] != nil {
			return nil, p.errAt(p.peek(0), "expected ':' or ']', got %s", describe(p.peek(0)))
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		parts[idx] = e
	}
	if isSlice {
		return &sliceNode{base{start.pos}, parts[0], parts[1], parts[2]}, nil
	}
	if parts[0] == nil {
		return nil, p.errAt(start, "empty subscript")
	}
	return parts[0], nil
}

func (p *parser) parseArgs() ([]arg, error) {
	if _, err := p.expect(tLParen, "'('"); err != nil {
		return nil, err
	}
	var args []arg
	for p.peek(0).kind != tRParen {
		if p.peek(0).kind == tEOF {
			return nil, p.errAt(p.peek(0), "expected ')', got end of template")
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if p.peek(0).kind == tEquals {
			id, ok := e.(*identNode)
			if !ok {
				return nil, syntaxErr(p.src, e.position(), "keyword argument name must be a plain name")
			}
			p.i++
			v, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			args = append(args, arg{id.name, v})
		} else {
			args = append(args, arg{"", e})
		}
		if p.peek(0).kind == tComma {
			p.i++
		} else if p.peek(0).kind != tRParen {
			return nil, p.errAt(p.peek(0), "expected ',' or ')', got %s", describe(p.peek(0)))
		}
	}
	p.i++
	return args, nil
}

func (p *parser) parsePrimary() (node, error) {
	t := p.next()
	b := base{t.pos}
	switch t.kind {
	case tNumber:
		if strings.Contains(t.val, ".") {
			f, err := strconv.ParseFloat(t.val, 64)
			if err != nil {
				return nil, p.errAt(t, "bad number %q", t.val)
			}
			return &constNode{b, f}, nil
		}
		n, err := strconv.ParseInt(t.val, 10, 64)
		if err != nil {
			return nil, p.errAt(t, "integer %q out of range", t.val)
		}
		return &constNode{b, n}, nil
	case tString:
		s := t.val
		for p.peek(0).kind == tString { // adjacent literals concatenate
			s += p.next().val
		}
		return &constNode{b, s}, nil
	case tIdent:
		return &identNode{b, t.val}, nil
	case tLParen:
		e, err := p.parseExprSeq(false)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "')'"); err != nil {
			return nil, err
		}
		return e, nil
	case tLBracket:
		var items []node
		for p.peek(0).kind != tRBracket {
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			items = append(items, e)
			if p.peek(0).kind == tComma {
				p.i++
			} else if p.peek(0).kind != tRBracket {
				return nil, p.errAt(p.peek(0), "expected ',' or ']', got %s", describe(p.peek(0)))
			}
		}
		p.i++
		return &listNode{b, items}, nil
	case tLBrace:
		d := &dictNode{base: b}
		for p.peek(0).kind != tRBrace {
			k, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tColon, "':'"); err != nil {
				return nil, err
			}
			v, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			d.keys = append(d.keys, k)
			d.vals = append(d.vals, v)
			if p.peek(0).kind == tComma {
				p.i++
			} else if p.peek(0).kind != tRBrace {
				return nil, p.errAt(p.peek(0), "expected ',' or '}', got %s", describe(p.peek(0)))
			}
		}
		p.i++
		return d, nil
	}
	return nil, p.errAt(t, "unexpected %s in expression", describe(t))
}
