/* Hand-written decoders for the messages of the hot small requests (get_variable and pull, both
 * ways): GetVariableRequest, GetVariableReply (VarInfo, Initializer), PullRequest, TensorDesc and
 * ShapeSpec, into protobuf-c's own structs. protobuf-c's descriptor-driven unpack of a 94-byte
 * get_variable reply costs about 300 ns; these read the usual forms several times faster and give
 * every other form back to protobuf-c. */
#ifndef PS_INTERNAL_PB_FAST_H
#define PS_INTERNAL_PB_FAST_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/**
 * Decode len bytes at data as a message of descriptor d when d is one of the messages above,
 * allocating from a, which must be an arena (nothing is freed one by one; on failure what was
 * taken stays in it). Returns the message, or NULL when d is not one of them, when the bytes hold
 * a field or form these decoders leave to protobuf-c (a Constraint, a SaveSliceInfo, absent
 * names, an unknown field, a singular message given twice, a wire type the field does not take,
 * a malformed varint or length) or when an allocation failed: the caller then asks protobuf-c's
 * unpack, so the result is always the message protobuf-c would give.
 */
ProtobufCMessage *ps_pb_fast_decode(const ProtobufCMessageDescriptor *d,
                                    ProtobufCAllocator *a,
                                    size_t len,
                                    const uint8_t *data);

#endif /* PS_INTERNAL_PB_FAST_H */
