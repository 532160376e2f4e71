/* ProcessPrng for Wine < 8.13, which lacks it (Rust's std, so wasmtime's _wasmtime.dll, imports
   bcryptprimitives.dll!ProcessPrng; every Windows 10+ has it). Built with mingw-w64 by
   wvwasi.packager.wincross into wvwasi's own Wine prefix only: never shipped in an app. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
