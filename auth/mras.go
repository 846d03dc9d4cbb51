package auth

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MRAS wire format, after [MS-AVEDGEA] (Audio Video Edge Authentication
// Protocol), section 2.2.3: a request document
//
//	<request xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp"
//	         requestID="…" version="2.0" to="…" from="…" [route="…"]>
//	  <credentialsRequest credentialsRequestID="…">   (1..100 of these)
//	    <identity>…</identity>
//	    <location>internet|intranet</location>        (optional)
//	    <duration>minutes</duration>                  (optional)
//	  </credentialsRequest>
//	</request>
//
// is answered by a response document
//
//	<response xmlns="…" requestID="…" version="…" serverVersion="…"
//	          to="…" from="…" reasonPhrase="OK">
//	  <credentialsResponse credentialsRequestID="…">
//	    <credentials><username/><password/><duration/></credentials>
//	    <mediaRelayList>
//	      <mediaRelay><location/><hostName/><udpPort/><tcpPort/></mediaRelay>
//	    </mediaRelayList>
//	  </credentialsResponse>
//	</response>

// MRASNamespace is the XML namespace of MRAS documents.
const MRASNamespace = "http://schemas.microsoft.com/2006/09/sip/mrasp"

// MRASContentType is the media type of MRAS request and response bodies.
const MRASContentType = "application/msrtc-media-relay-auth+xml"

// MRASServerVersion is the protocol version avedge answers with. Requests of
// major version 1 or 2 are served.
const MRASServerVersion = "2.0"

// MaxCredentialsRequests bounds the credentialsRequest elements in one
// request. [MS-AVEDGEA] requestType: maxOccurs="100".
const MaxCredentialsRequests = 100

// MRAS reasonPhrase vocabulary ([MS-AVEDGEA] reasonPhraseType).
const (
	PhraseOK                  = "OK"
	PhraseRequestMalformed    = "Request Malformed"
	PhraseRequestTooLarge     = "Request Too Large"
	PhraseNotSupported        = "Not Supported"
	PhraseServerBusy          = "Server Busy"
	PhraseTimeOut             = "Time Out"
	PhraseForbidden           = "Forbidden"
	PhraseInternalServerError = "Internal Server Error"
	PhraseOtherFailure        = "Other Failure"
	PhraseVersionMismatch     = "Version Mismatch"
)

// Locations of a relay or a requester.
const (
	LocationInternet = "internet"
	LocationIntranet = "intranet"
)

// Bounds on the request document.
const (
	maxAttrLen     = 64 // max64CharStringType (requestID, credentialsRequestID)
	maxURILen      = 1024
	maxTextLen     = 1024 // any leaf element's text
	maxXMLTokens   = 4096
	maxDurationLen = 9 // digits: far above any sane cap, far below overflow
)

// MRASRequest is a parsed MRAS request document.
type MRASRequest struct {
	RequestID string
	Version   string
	To        string
	From      string
	Route     string // "" when absent
	Requests  []MRASCredentialsRequest
}

// MRASCredentialsRequest is one credentialsRequest element.
type MRASCredentialsRequest struct {
	ID       string // credentialsRequestID
	Identity string
	Location string // "", LocationInternet or LocationIntranet
	Duration int    // minutes; 0 when absent
}

// ParseMRASRequest reads an MRAS request document strictly: the root must be
// {MRASNamespace}request with its required attributes, the body 1 to
// MaxCredentialsRequests credentialsRequest elements and nothing else; DOCTYPE
// declarations, entities other than XML's predefined ones, and non-UTF-8
// encodings are refused. Errors wrap ErrMRASMalformed, ErrMRASTooLarge or
// ErrMRASVersion; with ErrMRASVersion the returned request carries the root's
// attributes so the response can echo them.
func ParseMRASRequest(r io.Reader) (MRASRequest, error) {
	p := mrasParser{d: xml.NewDecoder(r)}
	p.d.Strict = true
	return p.parse()
}

type mrasParser struct {
	d      *xml.Decoder
	tokens int
}

// next returns the next token that matters: comments are skipped, character
// data that is only white space is skipped, DOCTYPE and processing
// instructions other than the XML declaration are refused.
func (p *mrasParser) next() (xml.Token, error) {
	for {
		if p.tokens++; p.tokens > maxXMLTokens {
			return nil, fmt.Errorf("more than %d XML tokens: %w", maxXMLTokens, ErrMRASTooLarge)
		}
		tok, err := p.d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%w: %w", ErrMRASMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Comment:
			continue
		case xml.Directive:
			return nil, fmt.Errorf("DOCTYPE or directive refused: %w", ErrMRASMalformed)
		case xml.ProcInst:
			if t.Target != "xml" {
				return nil, fmt.Errorf("processing instruction %q refused: %w", t.Target, ErrMRASMalformed)
			}
			continue
		case xml.CharData:
			if len(strings.TrimSpace(string(t))) == 0 {
				continue
			}
			return t.Copy(), nil
		default:
			return xml.CopyToken(tok), nil
		}
	}
}

func (p *mrasParser) parse() (MRASRequest, error) {
	var req MRASRequest
	tok, err := p.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return req, fmt.Errorf("empty document: %w", ErrMRASMalformed)
		}
		return req, err
	}
	root, ok := tok.(xml.StartElement)
	if !ok || root.Name.Space != MRASNamespace || root.Name.Local != "request" {
		return req, fmt.Errorf("root is not {%s}request: %w", MRASNamespace, ErrMRASMalformed)
	}
	attrs := map[string]*string{"requestID": &req.RequestID, "version": &req.Version, "to": &req.To, "from": &req.From, "route": &req.Route}
	if err := readAttrs(root, attrs); err != nil {
		return req, err
	}
	for _, a := range []struct {
		name string
		v    string
		max  int
	}{{"requestID", req.RequestID, maxAttrLen}, {"version", req.Version, maxAttrLen}, {"to", req.To, maxURILen}, {"from", req.From, maxURILen}} {
		if a.v == "" || len(a.v) > a.max {
			return req, fmt.Errorf("attribute %s: missing or longer than %d: %w", a.name, a.max, ErrMRASMalformed)
		}
	}
	if req.Route != "" && req.Route != "loadbalanced" && req.Route != "directip" {
		return req, fmt.Errorf("route %q: %w", req.Route, ErrMRASMalformed)
	}
	major, ok := parseVersion(req.Version)
	if !ok {
		return req, fmt.Errorf("version %q: %w", req.Version, ErrMRASMalformed)
	}
	if major != 1 && major != 2 {
		return req, fmt.Errorf("version %q: %w", req.Version, ErrMRASVersion)
	}
	for {
		tok, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return req, fmt.Errorf("unterminated request: %w", ErrMRASMalformed)
			}
			return req, err
		}
		switch t := tok.(type) {
		case xml.EndElement: // the decoder guarantees it matches root
			if len(req.Requests) == 0 {
				return req, fmt.Errorf("no credentialsRequest: %w", ErrMRASMalformed)
			}
			if _, err := p.next(); !errors.Is(err, io.EOF) {
				return req, fmt.Errorf("content after the root element: %w", ErrMRASMalformed)
			}
			return req, nil
		case xml.StartElement:
			if t.Name.Space != MRASNamespace || t.Name.Local != "credentialsRequest" {
				return req, fmt.Errorf("unexpected element %q in request: %w", t.Name.Local, ErrMRASMalformed)
			}
			if len(req.Requests) == MaxCredentialsRequests {
				return req, fmt.Errorf("more than %d credentialsRequest: %w", MaxCredentialsRequests, ErrMRASTooLarge)
			}
			cr, err := p.parseCredentialsRequest(t)
			if err != nil {
				return req, err
			}
			req.Requests = append(req.Requests, cr)
		default:
			return req, fmt.Errorf("text in request: %w", ErrMRASMalformed)
		}
	}
}

func (p *mrasParser) parseCredentialsRequest(start xml.StartElement) (MRASCredentialsRequest, error) {
	var cr MRASCredentialsRequest
	if err := readAttrs(start, map[string]*string{"credentialsRequestID": &cr.ID}); err != nil {
		return cr, err
	}
	if cr.ID == "" || len(cr.ID) > maxAttrLen {
		return cr, fmt.Errorf("credentialsRequestID missing or longer than %d: %w", maxAttrLen, ErrMRASMalformed)
	}
	var seenIdentity, seenLocation, seenDuration bool
	for {
		tok, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return cr, fmt.Errorf("unterminated credentialsRequest: %w", ErrMRASMalformed)
			}
			return cr, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if !seenIdentity {
				return cr, fmt.Errorf("credentialsRequest %q without identity: %w", cr.ID, ErrMRASMalformed)
			}
			return cr, nil
		case xml.StartElement:
			if t.Name.Space != MRASNamespace {
				return cr, fmt.Errorf("element %q in foreign namespace: %w", t.Name.Local, ErrMRASMalformed)
			}
			text, err := p.text()
			if err != nil {
				return cr, err
			}
			var seen *bool
			switch t.Name.Local {
			case "identity":
				seen, cr.Identity = &seenIdentity, text
				if text == "" {
					return cr, fmt.Errorf("empty identity: %w", ErrMRASMalformed)
				}
			case "location":
				seen, cr.Location = &seenLocation, text
				if text != LocationInternet && text != LocationIntranet {
					return cr, fmt.Errorf("location %q: %w", text, ErrMRASMalformed)
				}
			case "duration":
				seen = &seenDuration
				// xs:positiveInteger
				n, err := strconv.Atoi(text)
				if err != nil || n < 1 || len(text) > maxDurationLen || text[0] == '+' {
					return cr, fmt.Errorf("duration %q: %w", text, ErrMRASMalformed)
				}
				cr.Duration = n
			default:
				return cr, fmt.Errorf("unexpected element %q in credentialsRequest: %w", t.Name.Local, ErrMRASMalformed)
			}
			if *seen {
				return cr, fmt.Errorf("element %q repeated: %w", t.Name.Local, ErrMRASMalformed)
			}
			*seen = true
		default:
			return cr, fmt.Errorf("text in credentialsRequest: %w", ErrMRASMalformed)
		}
	}
}

// text reads a leaf element's character data up to its end tag, trimmed.
func (p *mrasParser) text() (string, error) {
	var b strings.Builder
	for {
		tok, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("unterminated element: %w", ErrMRASMalformed)
			}
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if b.Len()+len(t) > maxTextLen {
				return "", fmt.Errorf("element text longer than %d: %w", maxTextLen, ErrMRASMalformed)
			}
			b.Write(t)
		case xml.EndElement:
			return strings.TrimSpace(b.String()), nil
		default:
			return "", fmt.Errorf("nested element in a text element: %w", ErrMRASMalformed)
		}
	}
}

// readAttrs copies the named unqualified attributes of start into dst,
// refusing duplicates; namespace declarations and other attributes are
// ignored.
func readAttrs(start xml.StartElement, dst map[string]*string) error {
	seen := make(map[string]bool, len(dst))
	for _, a := range start.Attr {
		if a.Name.Space != "" {
			continue
		}
		p, ok := dst[a.Name.Local]
		if !ok {
			continue
		}
		if seen[a.Name.Local] {
			return fmt.Errorf("attribute %s repeated: %w", a.Name.Local, ErrMRASMalformed)
		}
		seen[a.Name.Local] = true
		*p = a.Value
	}
	return nil
}

// parseVersion parses versionType "major.minor" and returns the major.
func parseVersion(v string) (int, bool) {
	maj, min, ok := strings.Cut(v, ".")
	if !ok || !allDigits(maj, 4) || !allDigits(min, 4) {
		return 0, false
	}
	n, _ := strconv.Atoi(maj)
	return n, true
}

func allDigits(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MRASResponse is an MRAS response document.
type MRASResponse struct {
	XMLName       xml.Name                  `xml:"http://schemas.microsoft.com/2006/09/sip/mrasp response"`
	RequestID     string                    `xml:"requestID,attr,omitempty"`
	Version       string                    `xml:"version,attr"`
	ServerVersion string                    `xml:"serverVersion,attr,omitempty"`
	To            string                    `xml:"to,attr,omitempty"`
	From          string                    `xml:"from,attr,omitempty"`
	ReasonPhrase  string                    `xml:"reasonPhrase,attr"`
	Responses     []MRASCredentialsResponse `xml:"credentialsResponse"`
}

// MRASCredentialsResponse answers one credentialsRequest.
type MRASCredentialsResponse struct {
	ID          string          `xml:"credentialsRequestID,attr"`
	Credentials MRASCredentials `xml:"credentials"`
	MediaRelays []MRASRelay     `xml:"mediaRelayList>mediaRelay"`
}

// MRASCredentials is the credentials element.
type MRASCredentials struct {
	Username string `xml:"username"`
	Password string `xml:"password"`
	Duration int    `xml:"duration"` // minutes
}

// MRASRelay is a mediaRelay element.
type MRASRelay struct {
	Location string `xml:"location"`
	HostName string `xml:"hostName"`
	UDPPort  int    `xml:"udpPort,omitempty"`
	TCPPort  int    `xml:"tcpPort,omitempty"`
}

// WriteMRASResponse writes resp as an XML document with its declaration.
func WriteMRASResponse(w io.Writer, resp *MRASResponse) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("auth: write MRAS response: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(resp); err != nil {
		return fmt.Errorf("auth: write MRAS response: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("auth: write MRAS response: %w", err)
	}
	return nil
}
