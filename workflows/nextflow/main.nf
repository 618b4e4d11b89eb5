// UNTESTED. Nextflow cannot be installed where this repository is developed and tested, so this
// file has never run. It is the same workflow as workflows/snakemake/Snakefile (which
// scripts/slurm-check runs, locally and on Slurm), written out for Nextflow users. Try it on a
// small input before you rely on it, and report what you had to change.
//
// One `embed run --slice I/N` task per slice, then one `embed merge`. The stores are written to
// params.outdir, an absolute path outside Nextflow's work/ folders: a task that fails or is
// cancelled and then runs again in a new work folder still finds the shards it committed there
// and resumes. A finished slice run again exits 0 at once ("nothing to do").
//
//   nextflow run workflows/nextflow/main.nf -c workflows/nextflow/nextflow.config \
//     --input reads.faa.gz --outdir /shared/project/embed-out --slices 8 -resume

nextflow.enable.dsl = 2

params.input = null
params.outdir = 'embed-out'              // slices/<I>/ per slice, merged/ the joined store
params.model = 'esm2_t33_650M_UR50D'
params.slices = 8
params.embed = 'embed'                   // or /shared/embed/.tools/bin/embed
params.run_options = '--no-download'     // more `embed run` options, one string

process EMBED_SLICE {
    tag "slice ${i}/${params.slices}"
    label 'embed_slice'

    input:
    val i
    val fasta
    val outdir

    output:
    val i

    script:
    """
    ${params.embed} run '${fasta}' -o '${outdir}/slices/${i}' --slice ${i}/${params.slices} \\
        --model '${params.model}' ${params.run_options}
    """
}

process EMBED_MERGE {
    label 'embed_merge'

    input:
    val done    // every slice number, once all slices are complete
    val outdir

    output:
    val "${outdir}/merged"

    script:
    def stores = (1..params.slices).collect { "'${outdir}/slices/${it}'" }.join(' ')
    """
    ${params.embed} merge '${outdir}/merged' ${stores}
    """
}

workflow {
    if (!params.input) {
        error "--input is not set: the FASTA file (plain or .gz) to embed"
    }
    // Absolute paths, passed as values rather than staged: every task reads the one input and
    // writes the stores in place.
    def fasta = file(params.input, checkIfExists: true).toAbsolutePath().toString()
    def outdir = file(params.outdir).toAbsolutePath().toString()
    EMBED_SLICE(Channel.of(1..params.slices), fasta, outdir)
    EMBED_MERGE(EMBED_SLICE.out.collect(), outdir)
}
