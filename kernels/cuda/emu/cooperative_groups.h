// seqgrid CUDA emulator: stand-in for <cooperative_groups.h>. The emulated subset
// (this_grid(), this_thread_block(), .sync(), .thread_rank(), .size()) is defined in
// cuda_emu.h, which is force-included before every emulated source.
#pragma once
