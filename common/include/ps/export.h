/* Symbol visibility for pscope's installed libraries. */
#ifndef PS_EXPORT_H
#define PS_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#    define PS_EXTERN __attribute__((visibility("default")))
#else
#    define PS_EXTERN
#endif

#endif /* PS_EXPORT_H */
