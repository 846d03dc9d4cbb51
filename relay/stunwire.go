//go:build linux

package relay

import (
	"encoding/binary"

	"github.com/pion/stun/v4"
)

// Byte-level looks at STUN messages the facades pass between clients and pion, for the few
// decisions that do not need a full decode. They check the type and walk the attributes; they
// are not general STUN parsers.

// Message types the facades look for (the first two bytes of a STUN message).
var (
	allocateRequest    = stun.NewType(stun.MethodAllocate, stun.ClassRequest).Value()
	channelBindError   = stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse).Value()
	dataIndicationType = stun.NewType(stun.MethodData, stun.ClassIndication).Value()
	bindingSuccess     = stun.BindingSuccess.Value()
)

// stunHeaderSize is the size of a STUN message header (RFC 8489 §5).
const stunHeaderSize = 20

// isAllocateRequest reports whether b is a STUN Allocate request.
func isAllocateRequest(b []byte) bool {
	return len(b) >= stunHeaderSize && binary.BigEndian.Uint16(b[0:2]) == allocateRequest
}

// isBindingSuccess reports whether b is a STUN Binding success response.
func isBindingSuccess(b []byte) bool {
	return len(b) >= stunHeaderSize && binary.BigEndian.Uint16(b[0:2]) == bindingSuccess
}

// dataIndicationPayload reports the DATA length of a STUN Data indication, for the
// indication counters.
func dataIndicationPayload(b []byte) (int, bool) {
	if len(b) < stunHeaderSize || binary.BigEndian.Uint16(b[0:2]) != dataIndicationType {
		return 0, false
	}
	for off := stunHeaderSize; off+4 <= len(b); {
		t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if t == stun.AttrData {
			return l, true
		}
		off += 4 + (l+3)&^3
	}
	return 0, false
}

// stunErrorCode returns the ERROR-CODE of a STUN error response, or 0.
func stunErrorCode(b []byte) int {
	if len(b) < stunHeaderSize {
		return 0
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	if mt.Class != stun.ClassErrorResponse {
		return 0
	}
	for off := stunHeaderSize; off+4 <= len(b); {
		t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		// ERROR-CODE (RFC 8489 §14.8): 2 reserved bytes, the class (hundreds) in the low 3
		// bits of the third, the number in the fourth.
		if t == stun.AttrErrorCode && l >= 4 && off+8 <= len(b) {
			return int(b[off+6]&0x07)*100 + int(b[off+7])
		}
		off += 4 + (l+3)&^3
	}
	return 0
}
