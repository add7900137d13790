# bash completion for tcpops and tcpops-cli (installed under both names in
# share/bash-completion/completions; or source it). Commands and app names
# are listed here; flags are read from the program's own --help each time,
# so they cannot drift from what it takes.

# The flags PROG ARGS... --help prints, one a line; --[no-]NAME is both
# --NAME and --no-NAME.
_tcpops_help_flags()
{
    "$@" --help 2>/dev/null | sed -E 's/--\[no-\]([a-z0-9][a-z0-9-]*)/--\1 --no-\1/g' |
        grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}

# The argument name (FILE, DIR, N, ...) --help gives flag $1 of PROG ARGS...
# ($2...), or nothing for a flag that takes none.
_tcpops_flag_arg()
{
    local flag=$1
    shift
    # $1 is a word off the command line, pasted into sed's program below:
    # only a flag's own characters may get there (a word such as
    # '--x/.../e' would have sed run a shell command).
    [[ $flag =~ ^--?[a-z0-9][a-z0-9-]*$ ]] || return 0
    "$@" --help 2>/dev/null |
        sed -nE "s/(^|.*[[ ])${flag}[ =]([A-Z][A-Za-z_:,.|[]*).*/\2/p" | head -n 1
}

# Completes cur as the value of flag $1 of PROG ARGS... ($2...): files for
# FILE, directories for DIR, apps for APP lists, nothing else. Returns 1
# when the flag takes no value.
_tcpops_value()
{
    local arg
    arg=$(_tcpops_flag_arg "$@")
    case $arg in
        '') return 1 ;;
        FILE*) COMPREPLY=($(compgen -f -- "$cur")) ;;
        DIR*) COMPREPLY=($(compgen -d -- "$cur")) ;;
        APP,*) COMPREPLY=($(compgen -W 'gateway people pets' -- "${cur##*,}"))
               [[ $cur == *,* ]] && COMPREPLY=("${COMPREPLY[@]/#/${cur%,*},}") ;;
        *) COMPREPLY=() ;;
    esac
    return 0
}

_tcpops()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]} cmd='' i
    local -a pos=()
    COMPREPLY=()
    # The command is the first word that is not a flag or --data-dir's value.
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --data-dir) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; else pos+=("${COMP_WORDS[i]}"); fi ;;
        esac
    done
    if [[ -z $cmd ]]; then
        [[ $prev == --data-dir ]] && { COMPREPLY=($(compgen -d -- "$cur")); return; }
        if [[ $cur == -* ]]; then
            # Only what its usage line shows goes before a command.
            COMPREPLY=($(compgen -W "$("$prog" --help 2>/dev/null | head -n 1 |
                                      grep -oE -- '--[a-z0-9][a-z0-9-]*') -h --help --version" \
                                 -- "$cur"))
        else
            COMPREPLY=($(compgen -W 'up ps scale restart down metrics logs' -- "$cur"))
        fi
        return
    fi
    if [[ $prev == -* ]] && _tcpops_value "$prev" "$prog" "$cmd"; then
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_tcpops_help_flags "$prog" "$cmd") -h" -- "$cur"))
        return
    fi
    # up takes positional words only as flag values; for up, a word after
    # a flag that takes none is not completed (--config's file was above).
    case $cmd:${#pos[@]} in
        scale:0) COMPREPLY=($(compgen -W 'people pets' -- "$cur")) ;;
        restart:0 | logs:0) COMPREPLY=($(compgen -W 'gateway people pets' -- "$cur")) ;;
    esac
}

_tcpops_cli()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]} i w
    local -a words=()
    COMPREPLY=()
    # The command words so far, flags and their values left out.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == -* ]]; then
            [[ -n $(_tcpops_flag_arg "$w" "$prog" "${words[@]}") ]] && ((i++))
        else
            words+=("$w")
        fi
    done
    if [[ $prev == -* ]] && _tcpops_value "$prev" "$prog" "${words[@]}"; then
        return
    fi
    if [[ $cur == -* ]]; then
        # A command's --help shows its own flags; the global ones are in the
        # program's.
        COMPREPLY=($(compgen -W "$({ _tcpops_help_flags "$prog" "${words[@]}"
                                     _tcpops_help_flags "$prog"; } | sort -u) -h --version" \
                                 -- "$cur"))
        return
    fi
    case ${#words[@]}:${words[0]-} in
        0:) COMPREPLY=($(compgen -W 'status ping people pets' -- "$cur")) ;;
        1:people) COMPREPLY=($(compgen -W 'list create pets add-pet' -- "$cur")) ;;
        1:pets) COMPREPLY=($(compgen -W 'get create' -- "$cur")) ;;
    esac
}

complete -F _tcpops tcpops
complete -F _tcpops_cli tcpops-cli
